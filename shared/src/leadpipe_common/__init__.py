"""leadpipe's common library: plumbing shared by every service.

It holds the event contracts and how they travel (envelope, topics, producer,
consumer runner), the database helpers, settings, logging and the ops
endpoints. It holds no business rule: normalising, enriching, scoring and
routing live in each service's own ``domain`` module.
"""
