/* Error names: see error.h. */
#include "core/error.h"

#include <string.h>

const char *spw_strerror(int err)
{
    switch (err) {
    case SPW_OK: return "success";
    case SPW_ECORRUPT: return "data is corrupt (checksum or structure mismatch)";
    case SPW_ETRUNC: return "data ends inside a record batch";
    case SPW_EAGAIN: return "resource temporarily unavailable (budget full, try again)";
    case SPW_EROFS: return "partition is read-only after a failed write or fsync";
    case SPW_ERANGE: return "offset out of range";
    case SPW_EDISKLIMIT: return "the data directory is at its max-disk-bytes limit";
    case SPW_ECONFLICT: return "the key is not at the expected version";
    case SPW_EDELETED: return "the stream was deleted";
    default: break;
    }
    if (err < 0 && err > SPW__ERR_BASE)
        return strerror(-err);
    return "unknown error";
}
