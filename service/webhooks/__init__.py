"""Webhooks: the events and command results, POSTed to configured HTTP endpoints and signed
the Standard Webhooks way. `signing` and `filters` are pure and import nothing of the
service (`settings`, the webhooks' settings section, uses them to check a configuration);
`core` holds the delivery policy and `dispatcher` the Kafka and HTTP adapters."""
