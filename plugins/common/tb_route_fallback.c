/* tb_route_fallback: counting and logging instance choices made without the router (see
 * tb_route_fallback.h). */
#include "tb_route_fallback.h"

#include <stdio.h>

const char *tb_route_fallback_reason(tb_rf_reason_t reason)
{
    switch (reason) {
    case TB_RF_NO_ROUTER:
        return "no_router";
    case TB_RF_ROUTER_DOWN:
        return "router_down";
    case TB_RF_ROUTER_ERROR:
        return "router_error";
    case TB_RF_BAD_ANSWER:
        return "bad_answer";
    case TB_RF_RETRY:
        return "retry";
    }
    return "unknown";
}

void tb_route_fallback_init(struct tb_route_fallback *f, const struct tb_host *host,
                            tb_component_t *comp)
{
    f->host = host;
    f->comp = comp;
    f->metric = host->metric_get(comp, "turbine_router_fallback_total", TB_METRIC_COUNTER,
                                 "instances chosen without the router (it could not be asked "
                                 "or its answer could not be used), by component, model and why",
                                 "component,model,reason", NULL, 0);
    f->next_log_ns = 0;
    f->unlogged = 0;
}

/* `in` as a label value: label values are passed comma-separated, so commas become '_'. */
static void s_label(char *out, size_t cap, const char *in)
{
    snprintf(out, cap, "%s", in ? in : "");
    for (char *p = out; *p; p++) {
        *p = *p == ',' ? '_' : *p;
    }
}

void tb_route_fallback_note(struct tb_route_fallback *f, const char *model, tb_rf_reason_t reason,
                            const char *detail)
{
    const struct tb_host *h = f->host;
    const char *why = tb_route_fallback_reason(reason);
    if (f->metric) {
        char comp[128], m[256], labels[420];
        s_label(comp, sizeof(comp), h->component_name(f->comp));
        s_label(m, sizeof(m), model);
        snprintf(labels, sizeof(labels), "%s,%s,%s", comp, m, why);
        h->metric_add(f->metric, labels, 1);
    }
    f->unlogged++;
    int64_t now = h->now_ns();
    if (now < f->next_log_ns) {
        return;
    }
    TB_LOG_WARN(h, f->comp,
                "routing fallback (%s%s%s) for model '%s': instance chosen here in turn, "
                "not by the router; %lld such since the last line "
                "(turbine_router_fallback_total)",
                why, detail && *detail ? ": " : "", detail ? detail : "", model ? model : "",
                (long long)f->unlogged);
    f->unlogged = 0;
    f->next_log_ns = now + TB_ROUTE_FALLBACK_LOG_NS;
}
