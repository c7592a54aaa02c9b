"""A fake BTCPay Server that speaks the Greenfield and legacy HTTP APIs (tests and demo)."""
