"""The users domain: accounts, profiles and roles."""
