/* An LD_PRELOAD shim for out-of-memory tests: malloc and realloc of exactly
 * $SYNCBN_FAIL_ALLOC_SIZE bytes fail (NULL, errno ENOMEM); everything else
 * goes to glibc. It removes LD_PRELOAD from the environment as it loads, so
 * only the process it was preloaded into fails, not the programs that
 * process starts. Not for sanitizer builds (they own malloc). */
#include <errno.h>
#include <stdlib.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_realloc(void *pointer, size_t size);

static size_t fail_size;

__attribute__((constructor)) static void fail_alloc_init(void)
{
    const char *size = getenv("SYNCBN_FAIL_ALLOC_SIZE");
    if (size) fail_size = (size_t)strtoull(size, NULL, 10);
    unsetenv("LD_PRELOAD");
}

void *malloc(size_t size)
{
    if (fail_size && size == fail_size) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(size);
}

void *realloc(void *pointer, size_t size)
{
    if (fail_size && size == fail_size) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(pointer, size);
}
