"""The one outbound HTTP layer: transport, retries and Retry-After, rate and concurrency limits,
redaction, the destination policy. Used by the engine's source client and by the remote sinks alike;
it knows nothing of the engine, the sinks or Kubernetes."""
