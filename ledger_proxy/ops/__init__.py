"""Operations: Prometheus metrics, the JSON access log, gunicorn settings; wired from create_app."""
