"""HTTP: the app, routes, credentials, the server, workers, Ray Serve, observability, the playground."""
