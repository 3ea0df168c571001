/*
 * The checks before a request: see request.h. The sentences are those
 * both protocols gave before they shared this step (docs/api.md,
 * docs/protocol.md "Status").
 */
#include "svc/request.h"

#include <stdatomic.h>
#include <stdio.h>

#include "svc/auth.h"
#include "catalog/catalog.h"
#include "catalog/groups.h"
#include "catalog/stream.h"

static spw_sc answer(spw_sc c, char *msg, size_t cap)
{
    snprintf(msg, cap, "%s", spw_sc_sentence(c));
    return c;
}

spw_sc spw_svc_names(const char *name, size_t len, const char *group, size_t glen, const char *member, size_t mlen,
                     char *msg, size_t cap)
{
    if (!spw_stream_name_ok(name, len))
        return answer(SPW_SC_BAD_NAME, msg, cap);
    if (group && (!spw_group_name_ok(group, glen) || (mlen && !spw_group_member_ok(member, mlen))))
        return answer(SPW_SC_BAD_GROUP_NAME, msg, cap);
    return SPW_SC_OK;
}

spw_sc spw_svc_allowed(spw_auth *auth, const spw_token *who, const char *name, size_t len, unsigned perms, char *msg,
                       size_t cap)
{
    if (!who || !name || spw_token_allows(who, perms, name, len))
        return SPW_SC_OK;
    if (auth)
        atomic_fetch_add(&auth->forbidden, 1);
    if ((who->perms & perms) != perms)
        snprintf(msg, cap, "the token of tenant %s lacks the %s permission", who->tenant, spw_perm_name(perms));
    else
        snprintf(msg, cap, "the token of tenant %s may not use stream %.*s", who->tenant, (int)len, name);
    return SPW_SC_FORBIDDEN;
}

spw_sc spw_svc_stream_for(spw_catalog *cat, spw_auth *auth, const spw_token *who, const char *name, size_t len,
                          unsigned perms, spw_stream **out, char *msg, size_t cap)
{
    *out = NULL;
    spw_sc c = spw_svc_names(name, len, NULL, 0, NULL, 0, msg, cap);
    if (c == SPW_SC_OK)
        c = spw_svc_allowed(auth, who, name, len, perms, msg, cap);
    if (c != SPW_SC_OK)
        return c;
    *out = spw_stream_get(cat, name, len);
    if (!*out) {
        snprintf(msg, cap, "no stream named %.*s", (int)len, name);
        return SPW_SC_NO_SUCH_STREAM;
    }
    return SPW_SC_OK;
}
