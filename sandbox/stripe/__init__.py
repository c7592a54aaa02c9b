"""A fake Stripe API for Checkout Sessions, signing webhooks as Stripe does (tests and demo)."""
