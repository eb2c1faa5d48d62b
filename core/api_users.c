/* /api/v1/users: create, login, me, delete. Password hashing runs off the HTTP threads
 * (http_request_offload) so a login storm cannot stall other requests. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"

typedef struct {
    char email[320];
    char *password;
    size_t password_len;
} credentials_t;

static void credentials_free(void *p)
{
    credentials_t *c = p;
    if (c->password) {
        memset(c->password, 0, c->password_len);
        free(c->password);
    }
    free(c);
}

/* Reads {"email","password"} with type checks; answers 400 and returns NULL otherwise.
 * `check_rules`: email syntax and password length (registration only). */
static credentials_t *credentials_read(http_request_t *req, bool check_rules)
{
    cJSON *body = api_body_object(req);
    if (!body)
        return NULL;
    credentials_t *c = NULL;
    cJSON *email = cJSON_GetObjectItemCaseSensitive(body, "email");
    cJSON *password = cJSON_GetObjectItemCaseSensitive(body, "password");
    if (!cJSON_IsString(email)) {
        http_respond_error(req, 400, email ? "email must be a string" : "email is required");
        goto done;
    }
    if (!cJSON_IsString(password)) {
        http_respond_error(req, 400,
                           password ? "password must be a string" : "password is required");
        goto done;
    }
    size_t elen = strlen(email->valuestring), plen = strlen(password->valuestring);
    if (check_rules) {
        if (!auth_email_valid(email->valuestring, elen)) {
            http_respond_error(req, 400, "email is not a valid address");
            goto done;
        }
        if (!auth_password_valid(password->valuestring, plen)) {
            http_respond_error(req, 400, "password must be 8 to 1024 bytes");
            goto done;
        }
    } else if (elen >= sizeof c->email || plen > 1024) {
        /* cannot match any account: same answer as a wrong password, without hashing */
        http_respond_error(req, 401, "Invalid credentials");
        goto done;
    }
    c = xcalloc(1, sizeof *c);
    str_copy(c->email, sizeof c->email, email->valuestring);
    c->password = xstrndup(password->valuestring, plen);
    c->password_len = plen;
done:
    cJSON_Delete(body);
    return c;
}

static void user_create_offloaded(http_request_t *req)
{
    api_t *app = req->app;
    credentials_t *c = req->data;
    store_user_t u = {0};
    str_copy(u.email, sizeof u.email, c->email);
    if (auth_password_hash(&app->cfg.auth, c->password, c->password_len, u.pwhash) != 0) {
        http_respond_error(req, 500, "cannot hash password");
        return;
    }
    int rc = app->store->ops->user_insert(app->store, &u);
    if (rc == STORE_EEXIST) {
        http_respond_error(req, 409, "User with email %s already exists.", c->email);
        return;
    }
    if (rc != STORE_OK) {
        api_store_error(req, rc, "user");
        return;
    }
    str_copy(req->user_id, sizeof req->user_id, u.id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", "User created successfully.");
    cJSON_AddStringToObject(o, "userId", u.id);
    http_respond_json(req, 201, o);
}

int api_user_create(http_request_t *req)
{
    credentials_t *c = credentials_read(req, true);
    if (!c)
        return HTTP_DONE;
    req->data = c;
    req->data_free = credentials_free;
    http_request_offload(req, user_create_offloaded);
    return HTTP_SUSPEND;
}

static void user_login_offloaded(http_request_t *req)
{
    api_t *app = req->app;
    credentials_t *c = req->data;
    store_user_t u;
    int rc = app->store->ops->user_get_by_email(app->store, c->email, &u);
    if (rc == STORE_EUNAVAIL) {
        api_store_error(req, rc, "user");
        return;
    }
    bool ok = rc == STORE_OK
                  ? auth_password_verify(u.pwhash, c->password, c->password_len) == 0
                  : auth_password_verify_dummy(&app->cfg.auth, c->password, c->password_len) == 0;
    if (!ok) {
        http_respond_error(req, 401, "Invalid credentials");
        return;
    }
    char *token = auth_token_issue(&app->cfg.auth, u.id, u.email, u.token_version);
    if (!token) {
        http_respond_error(req, 500, "cannot issue token");
        return;
    }
    str_copy(req->user_id, sizeof req->user_id, u.id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", "User logged successfully.");
    cJSON_AddStringToObject(o, "token", token);
    free(token);
    http_respond_json(req, 201, o);
}

int api_user_login(http_request_t *req)
{
    credentials_t *c = credentials_read(req, false);
    if (!c)
        return HTTP_DONE;
    req->data = c;
    req->data_free = credentials_free;
    http_request_offload(req, user_login_offloaded);
    return HTTP_SUSPEND;
}

int api_user_me(http_request_t *req)
{
    store_user_t u;
    if (api_authenticate(req, &u) != 0)
        return HTTP_DONE;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "userId", u.id);
    cJSON_AddStringToObject(o, "email", u.email);
    http_respond_json(req, 200, o);
    return HTTP_DONE;
}

int api_user_delete(http_request_t *req)
{
    api_t *app = req->app;
    store_user_t u;
    if (api_authenticate(req, &u) != 0)
        return HTTP_DONE;
    int rc = app->store->ops->user_delete(app->store, u.id);
    if (rc != STORE_OK) {
        api_store_error(req, rc, "user");
        return HTTP_DONE;
    }
    log_kv(LOG_INFO, "userId", u.id, "user deleted with their functions and executions");
    cJSON *o = cJSON_CreateObject();
    char msg[400];
    snprintf(msg, sizeof msg, "User email %s deleted successfully.", u.email);
    cJSON_AddStringToObject(o, "message", msg);
    http_respond_json(req, 200, o);
    return HTTP_DONE;
}
