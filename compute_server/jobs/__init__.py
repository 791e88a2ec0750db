"""Job records, the queue, the worker and cancellation."""
