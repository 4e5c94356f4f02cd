"""Model monitoring: losses over time, durable, in windows that merge."""
