"""The scale-out queue: Postgres and Procrastinate, with `makeitmove worker` processes."""
