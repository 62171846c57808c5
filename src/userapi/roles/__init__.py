"""The roles domain: the permission catalogue, roles as data, and the `require_permission` route guard."""
