//! The middleware against a router of stand-in routes.
