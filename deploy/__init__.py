"""The deployment files that ship with Relayhook (the systemd unit, the Caddy and nginx
examples), read as package data through relayhook._shipped.shipped_dir."""
