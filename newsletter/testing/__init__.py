"""Real stand-ins for the outside world, for tests and benchmarks: a PostgreSQL cluster,
a fake SendGrid HTTP server and an SMTP sink. Shipped with the package so benchmarks and
operators can use them too."""
