"""The web edge: the application factory, the ingress (`/in/{token}`) and the JSON API."""
