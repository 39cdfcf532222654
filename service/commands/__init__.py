"""Commands in: dial, SMS and survey commands from Kafka, executed through CCC at most once."""
