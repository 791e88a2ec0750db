"""The server's jobs, each composing the stages for one method."""
