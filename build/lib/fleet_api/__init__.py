"""Fleet API: a JSON REST API for a fleet of ships and their users, on Falcon."""
