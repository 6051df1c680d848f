/*
 * Unit tests of the capped text buffer (include/bri/text.h): appends grow it
 * (one larger than a doubling too), an empty one finishes as "", the cap is
 * reached exactly and never passed, the first failure sticks and later
 * appends do nothing, and finishing or freeing leaves it empty.
 */
#include <errno.h>

#include "bri/text.h"
#include "expect.h"

static void test_grow_and_finish(void)
{
	struct bri_text t = {0};
	char *out = NULL, big[10000];
	size_t len = 99;

	EXPECT_EQ_INT(bri_text_finish(&t, &out, &len), 0);
	EXPECT(out && out[0] == '\0' && len == 0);
	free(out);

	bri_text_add(&t, "%s=%d;", "a", 1);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	bri_text_add(&t, "%s", big); /* more than one doubling of 4 KiB */
	bri_text_add(&t, "|end");
	EXPECT_EQ_INT(t.error, 0);
	EXPECT_EQ_INT(bri_text_finish(&t, &out, &len), 0);
	EXPECT_EQ_INT(len, 4 + sizeof(big) - 1 + 4);
	EXPECT_EQ_INT(strlen(out), len);
	EXPECT(strncmp(out, "a=1;xx", 6) == 0 && strcmp(out + len - 5, "x|end") == 0);
	EXPECT(!t.buf && t.len == 0 && t.cap == 0);
	free(out);
}

static void test_cap(void)
{
	struct bri_text t = {.max = 16};
	char *out = (char *)"untouched";
	size_t len = 7;

	bri_text_add(&t, "%s", "0123456789abcde"); /* 15 bytes and the NUL: exactly the cap */
	EXPECT_EQ_INT(t.error, 0);
	EXPECT_EQ_INT(t.cap, 16);
	bri_text_add(&t, "f"); /* one byte past it */
	EXPECT_EQ_INT(t.error, -EFBIG);
	bri_text_add(&t, "g"); /* sticky: nothing more */
	EXPECT_EQ_INT(t.len, 15);
	EXPECT_EQ_INT(bri_text_finish(&t, &out, &len), -EFBIG);
	EXPECT(strcmp(out, "untouched") == 0 && len == 7);
	EXPECT(!t.buf && t.error == 0 && t.max == 16);

	bri_text_add(&t, "%s", "short");
	bri_text_free(&t);
	EXPECT(!t.buf && t.len == 0);
}

int main(void)
{
	test_grow_and_finish();
	test_cap();
	return EXPECT_RESULT();
}
