/*
 * Hooks: a program run after an operation (create, verify, restore,
 * cleanup, ...) succeeded or failed, so alerts reach someone (a mail, a
 * healthchecks.io-style ping). Run with no shell: execve of argv [PROGRAM]
 * with the caller's environment plus BRI_OPERATION, BRI_NAME, BRI_RESULT
 * ("ok" or "failed") and BRI_REASON, stdin from /dev/null and stdout sent to
 * stderr, in a process group of its own that is killed (SIGKILL) at the
 * timeout. A hook's failure is logged and never changes the operation's
 * result.
 */
#ifndef BRI_HOOK_H
#define BRI_HOOK_H

#define BRI_HOOK_TIMEOUT_S 30 /* default time a hook may take */

struct bri_hooks {
	const char *on_success; /* program run after a successful operation, or NULL */
	const char *on_failure; /* program run after a failed one, or NULL */
	int timeout_s;          /* 0: BRI_HOOK_TIMEOUT_S */
};

/*
 * Runs the hook for an operation's result (0: on_success, else on_failure;
 * nothing when that one is NULL) and waits for it, at most the timeout.
 * name and reason may be NULL (passed as empty). Returns the hook's exit
 * status, -ETIMEDOUT when it was killed at the timeout, -ENOENT when no hook
 * is set, or another negative errno when it could not be started. Logs what
 * went wrong; callers ignore the result for the operation's own.
 */
int bri_hook_run(const struct bri_hooks *h, const char *operation, const char *name, int result,
                 const char *reason);

#endif
