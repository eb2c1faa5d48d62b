-- FaaS configuration. Plain Lua, evaluated once at start (and on SIGHUP) in a sandbox:
-- only base/string/table/math are available, plus env("NAME" [, default]) which returns
-- an environment variable (or the default, or nil).
--
-- Every key below is shown with its built-in default; delete a line to keep the default.
-- Unknown keys are errors (a typo is reported with its file:line), as are wrong types and
-- out-of-range values.
--
-- Units: sizes are bytes, given as a number (1048576) or a string with a unit ("512k",
-- "64m", "1g"). Durations are in seconds (fractions allowed: 0.5) unless the comment says
-- milliseconds (ms). `faas-api --check-config` prints the effective configuration.

server = {
    -- Address the REST API listens on. "0.0.0.0" to accept connections from other hosts.
    listen = "127.0.0.1",
    -- TCP port of the REST API (0..65535; 0 picks a free port).
    port = 8080,
    -- Request-handling threads (libmicrohttpd pool), 1..256.
    threads = 4,
    -- Largest request body accepted (1 byte..1g); larger requests get 413.
    body_limit = "1m",
    -- Seconds a synchronous execute waits for the result (0..86400) before answering
    -- 202 with the execution id instead (the caller then polls GET /executions/{id}).
    sync_wait = 30,
    -- Seconds to let in-flight requests finish on SIGTERM/SIGINT (0..3600).
    shutdown_grace = 10,
    cors = {
        -- Send CORS headers (and answer preflight OPTIONS requests).
        enabled = false,
        -- Allowed origins (at most 16); "*" allows any.
        origins = { "*" },
    },
    -- Absolute base URL used in Location headers, e.g. "https://faas.example.com".
    -- Empty: Location headers are relative.
    public_url = "",
}

auth = {
    -- HS256 signing key for the JWTs, at least 32 bytes. Keep it out of this file:
    -- export FAAS_JWT_SECRET="$(head -c 32 /dev/urandom | base64)".
    jwt_secret = env("FAAS_JWT_SECRET"),
    -- Lifetime of a login token in seconds (1 s..366 days).
    token_ttl = 86400,
    -- Argon2id password hashing cost: memory (19m..4g; OWASP's minimum is 19 MiB) and
    -- passes (2..64). Raising them slows every login and user creation.
    argon2_memory = "19m",
    argon2_ops = 2,
    -- Threads reserved for password hashing (1..64), so logins cannot starve the API.
    hash_threads = 1,
}

store = {
    -- "sqlite" (embedded, needs no server) or "mongodb" (several API replicas).
    driver = "sqlite",
    -- SQLite database file (created when missing, its directory too).
    path = "data/faas.db",
    -- MongoDB connection string and database (driver = "mongodb" only).
    -- Credentials are better given through the environment:
    --   uri = env("FAAS_MONGO_URI", "mongodb://127.0.0.1:27017"),
    uri = "mongodb://127.0.0.1:27017",
    database = "faas",
    -- Timeout of one store operation, in milliseconds (1..600000).
    timeout = 2000,
}

nats = {
    -- NATS server with JetStream enabled (nats-server -js).
    url = "nats://127.0.0.1:4222",
    -- WorkQueue stream (file storage) holding execution requests, and its subject.
    stream = "FUNCTIONS",
    subject = "functions",
    -- Stream holding results (subjects execution.*), kept results_max_age seconds
    -- (0 = no age limit; at most 10 years).
    results_stream = "RESULTS",
    results_max_age = 86400,
    -- Durable consumer shared by all workers, and the one shared by the API's result
    -- recorders. Names: letters, digits, '_' and '-'.
    consumer = "workers",
    recorder = "api-recorder",
    -- Deliveries of one request before the execution ends as "error" (1..1000).
    max_deliver = 5,
    -- Seconds a worker has to acknowledge (it sends in-progress acks on long runs), 1..86400.
    ack_wait = 30,
    -- Connection timeout in milliseconds (1..600000).
    connect_timeout = 1000,
    -- Largest message the NATS server accepts (1k..64m; nats-server's max_payload).
    -- limits.input, base64-encoded, must fit in it.
    max_payload = "8m",
}

worker = {
    -- Name of this worker in results, logs and container labels. Default: "<host>-<pid>", so
    -- workers started on one host never share one, and a worker on it also reaps what dead
    -- "<host>-<pid>" workers of its host left (its own run before a crash). A fixed id must
    -- be unique per worker (compose uses the container's host name).
    id = env("FAAS_WORKER_ID"),
    -- Executions run at the same time by one worker (1..256).
    concurrency = 4,
    -- Docker Engine API: unix socket and API version.
    docker_socket = "/var/run/docker.sock",
    docker_api = "v1.41",
    -- When an image is missing locally: "never" pull (fail with image_not_found),
    -- pull "if-missing", or "always" pull before running.
    pull_policy = "if-missing",
    -- Seconds between sweeps removing leftover containers of this worker (1..86400).
    reap_interval = 60,
    -- Output kept per stream (stdout, stderr) of one execution (1k..1g); beyond it the
    -- output is cut and the result says output_truncated.
    output_limit = "1m",
    -- Health (/healthz, /readyz) and /metrics server of the worker; port 0 disables it.
    listen = "127.0.0.1",
    port = 9091,
}

-- Resources of one function container. A function may ask for less than `max` when it
-- is registered; `default` applies when it asks for nothing. default <= max, both > 0.
limits = {
    -- Seconds an execution may run before it is killed (status timed_out), up to 86400.
    timeout = { default = 30, max = 300 },
    -- Memory (and memory+swap) of the container, 6m..1024g; beyond it: oom_killed.
    memory = { default = "128m", max = "1g" },
    -- CPUs (fractions allowed: 0.5), 0.01..1024.
    cpus = { default = 1, max = 2 },
    -- Processes in the container (1..4194304) and open files per process (1..1048576).
    pids = 64,
    nofile = 256,
    -- Size of the writable, noexec /tmp (0..16g); the rest of the filesystem is read-only.
    tmpfs = "16m",
    -- Largest execution input (the request body, 0..1g); must fit nats.max_payload.
    input = "1m",
    -- Total bytes of a function's environment variable names and values (0..1m).
    env = "16k",
    -- Functions get no network at all unless this is true AND the function asked for one
    -- at registration; they then join `network` (a Docker network name).
    allow_network = false,
    network = "bridge",
}

plugins = {
    -- Where plugins/<name>.lua live, and the Lua side of the plugin host.
    dir = "plugins",
    lua_dir = "lua",
    -- Per hook call: time budget in milliseconds (1..60000) and memory of each plugin's
    -- Lua state (1m..1g). A plugin going past either fails like a plugin error.
    time_budget = 50,
    memory_limit = "16m",
    -- Enabled plugins, each a name or { name = ..., conf = {...}, fail_open = false }.
    -- `conf` is handed to the plugin as JSON-compatible data (tables with keys 1..n
    -- become arrays). A failing plugin rejects the request (fail closed) unless
    -- fail_open = true. Names: [a-z0-9_]+. Hooks run by priority, set by each plugin.
    enabled = {
        -- Which images may be registered: Lua patterns matched against the full
        -- reference; deny wins over allow. require_tag refuses untagged/"latest" images.
        { name = "image_policy", conf = { deny = {}, allow = { ".*" }, require_tag = false } },
        -- Execution input: at most max_bytes, and optionally only valid JSON.
        { name = "input_limits", conf = { max_bytes = 1048576, require_json = false } },
        -- Per user: registered functions, executions per minute, executions running at once.
        { name = "quota", conf = { max_functions = 100, executions_per_minute = 600, max_concurrent = 20 } },
        -- Result post-processing: strip ANSI escapes, trim whitespace, cut to max_length
        -- bytes (0 = no cut), and expose the output parsed as JSON when it is JSON.
        { name = "output", conf = { strip_ansi = true, trim = false, max_length = 0, parse_json = true } },
        -- Masks secrets (Lua patterns) in function output before it is stored:
        -- { name = "redact", conf = { patterns = { "AKIA[0-9A-Z]+", "password=%S+" }, replacement = "***" } },
    },
}

log = {
    -- "debug", "info", "warn" or "error". Logs are JSON lines on stderr; every HTTP request
    -- is one "request" line at info ("warn" turns that request log off).
    level = "info",
}
