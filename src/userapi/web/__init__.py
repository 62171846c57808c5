"""The web console (/admin) and the hosted account pages (/account): HTML pages over the services."""
