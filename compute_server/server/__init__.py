"""The ROUTER loop, method dispatch and transport security."""
