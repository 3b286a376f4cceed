"""Operations: metrics, JSON logs, gunicorn settings, wired from create_app."""
