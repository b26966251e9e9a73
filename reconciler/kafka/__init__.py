"""The only place that talks to Kafka: topics through the Admin API."""
