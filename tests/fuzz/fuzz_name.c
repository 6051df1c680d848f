/*
 * libFuzzer target for bri_store_check_name, the gate every backup name
 * passes (CLI, ctl/create, seed scripts). Differential: the verdict must
 * equal a plain restatement of the contract (SPEC.md section 1), and a
 * refusal must come with a message. Not a unit test: built by scripts/fuzz.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bri/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool alnum(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* [A-Za-z0-9][A-Za-z0-9._-]*, 1..BRI_NAME_MAX bytes, not ctl/restore/latest. */
static bool contract(const uint8_t *s, size_t n)
{
	if (n == 0 || n > BRI_NAME_MAX || !alnum(s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return false;
	if ((n == 3 && memcmp(s, "ctl", 3) == 0) || (n == 7 && memcmp(s, "restore", 7) == 0) ||
	    (n == 6 && memcmp(s, "latest", 6) == 0))
		return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bri_err err = {0};
	char *buf = malloc(size ? size : 1);
	int rc;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	rc = bri_store_check_name(buf, size, &err);
	if ((rc == 0) != contract(data, size))
		abort();
	if (rc != 0 && (rc != -EINVAL && rc != -ENAMETOOLONG))
		abort();
	if (rc != 0 && (!err.msg[0] || strnlen(err.msg, sizeof(err.msg)) == sizeof(err.msg)))
		abort();
	/* The message never carries a raw control byte of the name to a terminal. */
	for (const char *p = err.msg; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			abort();
	free(buf);
	return 0;
}
