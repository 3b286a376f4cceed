"""Talking to Canvas: the client, the pure forwarding rules, request -> operation matching, OAuth."""
