"""Sign-in through L2: sessions and Bearer tokens, revocation, CSRF, the guard, rate limits.

The package itself loads nothing: `hooks.init_app` hooks the web side into the app, routes import
their helpers from the module that defines them (`access.require_admin`, `ratelimit.rate_limit`,
`guard.public`, `csrf.csrf_token`), and code outside the web layer (the L2 client `l2`, used when
publishing a run from a job) imports its module without loading Flask.
"""
