"""Development tools: `make demo`, the OTLP/HTTP sink, the log generator. Not shipped to agents."""
