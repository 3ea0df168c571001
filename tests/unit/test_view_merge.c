/*
 * cli/view_merge.h: the parts of one view key from several nodes, added
 * up (docs/api.md "Reads across nodes"): integer counts and sums stay
 * exact int64 while they fit and turn double past it, min/max keep the
 * winning part's text, final is true only when every part's is, other
 * members are the first part's, in its order.
 */
#include "cli/view_merge.h"

#include "cli/cmds.h"
#include "test.h"

/* Merges the n JSON texts and returns the result (static). */
static const char *merge(int n, const char *const *texts)
{
    static char out[1024];
    spw_json_span parts[8];
    for (int i = 0; i < n; i++)
        CHECK_EQ(spw__cli_parse(texts[i], strlen(texts[i]), &parts[i]), 0);
    spw_buf b = SPW_BUF_INIT;
    spw__cli_view_merge(parts, (size_t)n, &b);
    snprintf(out, sizeof out, "%.*s", (int)b.len, (const char *)b.p);
    spw_buf_fini(&b);
    return out;
}

int main(void)
{
    const char *agg[] = {"{\"key\":\"home\",\"count\":3,\"sum\":10,\"min\":-2,\"max\":7}",
                         "{\"key\":\"home\",\"count\":4,\"sum\":5,\"min\":1.5,\"max\":9}",
                         "{\"key\":\"home\",\"count\":1,\"sum\":-1,\"min\":-3,\"max\":0}"};
    CHECK(strcmp(merge(3, agg), "{\"key\":\"home\",\"count\":8,\"sum\":14,\"min\":-3,\"max\":9}") == 0);
    CHECK(strcmp(merge(1, agg), "{\"key\":\"home\",\"count\":3,\"sum\":10,\"min\":-2,\"max\":7}") == 0);

    /* a fraction makes the sum a double; an int64 overflow too */
    const char *dbl[] = {"{\"key\":\"a\",\"sum\":0.5}", "{\"key\":\"a\",\"sum\":2}"};
    CHECK(strcmp(merge(2, dbl), "{\"key\":\"a\",\"sum\":2.5}") == 0);
    const char *big[] = {"{\"sum\":9223372036854775807}", "{\"sum\":1}"};
    CHECK(strcmp(merge(2, big), "{\"sum\":9.2233720368547758e+18}") == 0);
    const char *fits[] = {"{\"sum\":9223372036854775806}", "{\"sum\":1}"};
    CHECK(strcmp(merge(2, fits), "{\"sum\":9223372036854775807}") == 0);

    /* buckets: final only when final everywhere; start kept */
    const char *bk[] = {"{\"start\":1000,\"count\":1,\"final\":true}", "{\"start\":1000,\"count\":2,\"final\":false}"};
    CHECK(strcmp(merge(2, bk), "{\"start\":1000,\"count\":3,\"final\":false}") == 0);
    const char *bk2[] = {"{\"start\":1000,\"count\":1,\"final\":true}", "{\"start\":1000,\"count\":2,\"final\":true}"};
    CHECK(strcmp(merge(2, bk2), "{\"start\":1000,\"count\":3,\"final\":true}") == 0);

    /* a part without a member adds nothing to it */
    const char *miss[] = {"{\"key\":\"k\",\"count\":2,\"sum\":4}", "{\"key\":\"k\",\"count\":1}"};
    CHECK(strcmp(merge(2, miss), "{\"key\":\"k\",\"count\":3,\"sum\":4}") == 0);

    spw_json_span o;
    CHECK_EQ(spw__cli_parse("{\"count\":12,\"sum\":2.5}", 22, &o), 0);
    CHECK(spw__cli_view_num(&o, "count") == 12);
    CHECK(spw__cli_view_num(&o, "sum") == 2.5);
    CHECK(spw__cli_view_num(&o, "max") == 0);
    printf("test_view_merge: ok\n");
    return 0;
}
