"""Test fixtures for leadpipe: a real broker, a real Postgres and real service processes.

Guarantees: nothing here mocks Kafka or Postgres. Fixtures start their own
broker and Postgres on free ports (never 9092 or 5432), so tests run beside a
`make run` stack and in CI alike, and start nothing until a test asks.
"""
