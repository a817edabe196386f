"""The request domain: models, lifecycle, deadlines and the services that change them."""
