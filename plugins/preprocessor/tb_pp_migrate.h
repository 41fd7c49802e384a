/*
 * tb_pp_migrate.h - request migration: what a request needs to go on when the engine instance
 * streaming its answer dies or leaves mid-answer.  The preprocessor holds the prompt and every
 * token id it has passed on to the caller, so it can send the request again, to another live
 * instance of the model, with the prompt plus those tokens (gen_request.resumed_tokens says how
 * many of them are answer), and keep streaming into the same detokenizer: the caller sees one
 * uninterrupted answer, with no text twice and none missing, and usage counted once.
 *
 * Only a broken stream migrates: the instance went away (TB_EGONE, within the lease TTL when its
 * process died) or stopped (TB_EDRAINING).  At most `migration_limit` times per request (0: never:
 * the error reaches the caller as before); past that, or with no instance left, the request ends
 * with an error naming the break and the attempts.  docs/operations.md, "Request migration".
 *
 * Plain data embedded in tb_pp_request (zeroed is an empty record); not thread-safe.
 */
#ifndef TB_PP_MIGRATE_H
#define TB_PP_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tb_pp_migrate {
    int32_t *generated; /* ids passed on to the caller so far (owned) */
    size_t n_generated, cap_generated;
    int32_t *resume; /* the prompt followed by `generated`, built per migration (owned) */
    size_t n_resume;
    size_t n_resumed; /* of those, answer ids (n_generated when it was built) */
    uint64_t *failed; /* instances whose stream broke (owned) */
    size_t n_failed, cap_failed;
    uint64_t instance;  /* the instance streaming now, 0 when unknown */
    int64_t migrations; /* done so far */
    int64_t broke_ns;   /* when the last stream broke (0: none) */
};

/* What tb_pp_migrate_on_break decided. */
typedef enum {
    TB_PP_MIGRATE_NO = 0,        /* not a broken stream: the error goes to the caller */
    TB_PP_MIGRATE_GO = 1,        /* send the request again (tb_pp_migrate_tokens) */
    TB_PP_MIGRATE_EXHAUSTED = 2, /* a broken stream, but migration_limit is used up */
} tb_pp_migrate_verdict_t;

/* Frees what `m` owns and zeroes it; safe on a zeroed or released record. */
void tb_pp_migrate_release(struct tb_pp_migrate *m);

/* Records the ids of a chunk passed on to the caller.  0 or TB_ENOMEM. */
int tb_pp_migrate_note(struct tb_pp_migrate *m, const int32_t *ids, size_t n);

/* True for the error codes of a broken stream (TB_EGONE, TB_EDRAINING). */
bool tb_pp_migrate_is_break(int code);

/* The stream on m->instance ended with error `code` at `now_ns`: decides, and on GO counts the
 * migration, remembers the instance as failed and builds the next attempt's tokens from
 * `prompt[0..n_prompt)` (borrowed).  A GO that cannot build them (out of memory) answers NO. */
tb_pp_migrate_verdict_t tb_pp_migrate_on_break(struct tb_pp_migrate *m, int code, int64_t limit,
                                               const int32_t *prompt, size_t n_prompt,
                                               int64_t now_ns);

/* The tokens to send now: the prompt itself before any migration, else prompt + generated.
 * Borrowed from `m` (or `prompt`) until the next call that changes `m`. */
const int32_t *tb_pp_migrate_tokens(const struct tb_pp_migrate *m, const int32_t *prompt,
                                    size_t n_prompt, size_t *n_out);

/* How many of tb_pp_migrate_tokens' ids are answer (0 before any migration). */
size_t tb_pp_migrate_resumed(const struct tb_pp_migrate *m);

#endif /* TB_PP_MIGRATE_H */
