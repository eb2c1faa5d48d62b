-- Configuration of the docker-compose stack (mounted read-only at /etc/faas/config.lua in the
-- api and worker containers). Every setting not named here keeps its default: see the
-- repository's config.lua for the full list. Secrets come from the env file (.env).

server = {
    -- Inside the container; the gateway reaches the replicas on the backend network.
    listen = "0.0.0.0",
    port = 8080,
    threads = 8,
    body_limit = "1m",
    sync_wait = 30,
    shutdown_grace = 10,
    -- Set to the gateway's public URL to get absolute Location headers.
    public_url = env("FAAS_PUBLIC_URL", ""),
}

auth = {
    jwt_secret = env("FAAS_JWT_SECRET"),
    token_ttl = 86400,
}

-- Shared by every API replica (SQLite cannot be shared across containers).
store = {
    driver = "mongodb",
    uri = env("FAAS_MONGO_URI", "mongodb://mongo:27017"),
    database = env("FAAS_MONGO_DATABASE", "faas"),
    timeout = 5000,
}

nats = {
    url = env("FAAS_NATS_URL", "nats://nats:4222"),
    -- A worker that dies mid-execution: its request is delivered again after ack_wait.
    ack_wait = 15,
    max_deliver = 5,
    connect_timeout = 2000,
    max_payload = "8m",          -- as in nats.conf
}

worker = {
    -- The worker image sets FAAS_WORKER_ID to the container's hostname when it is unset.
    id = env("FAAS_WORKER_ID"),
    concurrency = 4,
    docker_socket = "/var/run/docker.sock",
    pull_policy = "if-missing",
    reap_interval = 30,
    -- /healthz, /readyz (health check) and /metrics, on the backend network only.
    listen = "0.0.0.0",
    port = 9091,
}

plugins = {
    dir = "/usr/local/share/faas/plugins",
    lua_dir = "/usr/local/share/faas/lua",
    enabled = {
        { name = "image_policy", conf = { deny = {}, allow = { ".*" }, require_tag = false } },
        { name = "input_limits", conf = { max_bytes = 1048576, require_json = false } },
        { name = "quota", conf = { max_functions = 100, executions_per_minute = 600, max_concurrent = 20 } },
        { name = "output", conf = { strip_ansi = true, trim = false, max_length = 0, parse_json = true } },
    },
}

log = {
    level = env("FAAS_LOG_LEVEL", "info"),
}
