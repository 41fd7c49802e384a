/* tb_pp_request: a generation request's state in the preprocessor (see tb_pp_request.h). */
#include "tb_pp_request.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void tb_pp_request_list_init(struct tb_pp_request_list *l, const struct tb_host *host)
{
    l->host = host;
    l->head = NULL;
    atomic_init(&l->in_flight, 0);
}

int tb_pp_request_new(struct tb_pp_request_list *l, void *owner, tb_request_t *in,
                      struct tb_msg_gen_request **msg_p, double timeout_s,
                      struct tb_pp_request **out)
{
    const struct tb_host *h = l->host;
    *out = NULL;
    struct tb_pp_request *r = calloc(1, sizeof(*r));
    if (!r) {
        return TB_ENOMEM;
    }
    r->list = l;
    r->owner = owner;
    r->in = in;
    r->msg = *msg_p;
    *msg_p = NULL;
    int64_t dl = h->bus_request_deadline_ns(in);
    int64_t left_ms = dl ? (dl - h->now_ns()) / 1000000 : 0;
    r->timeout_ms = (int)(timeout_s * 1000);
    r->started_ns = h->now_ns();
    if (left_ms > 0 && left_ms < r->timeout_ms) {
        r->timeout_ms = (int)left_ms;
    }
    r->next = l->head;
    if (l->head) {
        l->head->prev = r;
    }
    l->head = r;
    atomic_fetch_add(&l->in_flight, 1);
    h->bus_request_set_user(in, r);
    *out = r;
    return 0;
}

void tb_pp_request_free(struct tb_pp_request *r)
{
    struct tb_pp_request_list *l = r->list;
    const struct tb_host *h = l->host;
    if (r->prev) {
        r->prev->next = r->next;
    } else if (l->head == r) {
        l->head = r->next;
    }
    if (r->next) {
        r->next->prev = r->prev;
    }
    if (r->router_call) {
        h->bus_call_cancel(r->router_call);
    }
    if (r->engine_call) {
        h->bus_call_cancel(r->engine_call);
    }
    void *m = r->msg;
    h->msg_free(&m);
    free(r->ids);
    tb_pp_text_destroy(&r->text);
    tb_pp_migrate_release(&r->mig);
    tb_pp_parse_destroy(&r->parse);
    free(r->grammar);
    free(r);
    atomic_fetch_sub(&l->in_flight, 1);
}

void tb_pp_request_fail(struct tb_pp_request *r, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->in) {
        r->list->host->bus_reply_error(r->in, code, "%s", msg);
        r->in = NULL;
    }
    tb_pp_request_free(r);
}

int tb_pp_request_send(struct tb_pp_request *r, const struct tb_msg_gen_chunk *c, bool final)
{
    const struct tb_host *h = r->list->host;
    struct tb_buf buf = {0};
    int rc = h->msg_encode(TB_MSG_GEN_CHUNK, c, &buf);
    if (rc == 0) {
        rc = h->bus_reply(r->in, buf.data, buf.len, final);
    } else if (final) {
        h->bus_reply_error(r->in, TB_EINTERNAL, "cannot encode a reply");
    }
    h->buf_free(&buf);
    if (final) {
        r->in = NULL;
    }
    return rc;
}
