/*
 * tb_signals.h - signal handling by the self-pipe trick: handlers write the signal number as one
 * byte to a pipe the main loop polls; nothing else happens inside a handler.
 *
 * Handled: SIGINT, SIGTERM (drain and exit), SIGHUP (reopen the log), SIGWINCH and SIGPIPE
 * (changed nothing; logged at debug at most), SIGQUIT is left to its default.
 */
#ifndef TB_SIGNALS_H
#define TB_SIGNALS_H

/* Installs the handlers.  Returns the read end of the pipe (non-blocking), or a negative errno.
 * Call once, from the main thread, before starting other threads. */
int tb_signals_install(void);

/* Reads one pending signal number from the pipe; 0 when none. */
int tb_signals_next(int fd);

#endif /* TB_SIGNALS_H */
