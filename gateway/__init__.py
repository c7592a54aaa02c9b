"""The checkout gateway: Starlette app, storage, order state, license issuer, mailer."""
