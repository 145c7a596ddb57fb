-- POST with an optional body: wrk -s bench/wrk/post.lua URL
-- BODY in the environment is sent as the request body (JSON for the admin API).
wrk.method = "POST"
wrk.body = os.getenv("BODY") or ""
wrk.headers["Content-Type"] = "application/json"
