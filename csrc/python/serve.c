/* serve.c - the interpreter on our core: a router installed with PyMem_SetAllocator in
 * CPython's raw, mem and object domains (pymalloc_real._serve; serve.py drives it).
 *
 * Each domain's router wraps the allocator that was there before (CPython's contract for
 * an allocator set after start-up: it must wrap the existing one):
 *
 *   malloc, calloc   while serving: the core (prm_malloc, prm_calloc); otherwise the
 *                    previous allocator
 *   free, realloc    by the block's owner, whatever the mode: the core when the ownership
 *                    map says the block is ours (prm_owns, O(1)), else the previous
 *                    allocator. So a block allocated before serving and freed inside goes
 *                    back to pymalloc or libc, and one allocated inside and freed after
 *                    comes back to us.
 *
 * The router is therefore installed once, on the first serve, and stays for the life of
 * the process: leaving serve() only turns `serving` off. Restoring the previous
 * allocators would hand them our blocks (every object created inside that is still
 * alive), which they would free as their own. Outside serve() the router costs one
 * ownership-map look-up per free.
 *
 * Thread safety: the raw domain is called without the GIL, from any thread. The router's
 * state is written once, under the GIL, before any router function can run (the previous
 * allocators), or is an atomic (the mode, the counters); the core has its own locks.
 *
 * The core's functions come as addresses from the cffi module (_core), as for
 * _fastpath.c, so there is still one allocator in the process. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>

#include "prm.h"

typedef void *(*core_malloc_fn)(size_t);
typedef void *(*core_calloc_fn)(size_t, size_t);
typedef void *(*core_realloc_fn)(void *, size_t);
typedef int (*core_free_fn)(void *);
typedef int (*core_owns_fn)(const void *);
typedef int (*core_take_error_fn)(prm_error *);

static struct {
    core_malloc_fn malloc;
    core_calloc_fn calloc;
    core_realloc_fn realloc;
    core_free_fn free;
    core_owns_fn owns;
    core_take_error_fn take_error;
} core;

/* What one domain's router counts (relaxed atomics: the raw domain has no GIL). */
typedef struct {
    uint64_t served;            /* malloc/calloc (and realloc of NULL) answered by the core */
    uint64_t passed;            /* malloc/calloc passed to the previous allocator */
    uint64_t freed_ours;        /* frees of our blocks */
    uint64_t freed_theirs;      /* frees passed to the previous allocator */
    uint64_t resized_ours;      /* reallocs of our blocks */
    uint64_t resized_theirs;    /* reallocs passed to the previous allocator */
} route_counts;

typedef struct {
    PyMemAllocatorDomain domain;
    const char *name;
    PyMemAllocatorEx previous;  /* filled once, before the router is installed */
    route_counts counts;
} domain_router;

static domain_router routers[3] = {
    { PYMEM_DOMAIN_RAW, "raw", { 0 }, { 0 } },
    { PYMEM_DOMAIN_MEM, "mem", { 0 }, { 0 } },
    { PYMEM_DOMAIN_OBJ, "obj", { 0 }, { 0 } },
};

static int installed;           /* the routers are in place (never undone; written under the GIL) */
static int serving;             /* atomic: new blocks come from the core */

#define COUNT(router, field) __atomic_fetch_add(&(router)->counts.field, 1, __ATOMIC_RELAXED)

static int is_serving(void)
{
    return __atomic_load_n(&serving, __ATOMIC_RELAXED);
}

/* CPython asks every domain for a distinct non-NULL pointer for 0 bytes. */
static size_t at_least_one(size_t size)
{
    return size == 0 ? 1 : size;
}

static void *route_malloc(void *ctx, size_t size)
{
    domain_router *router = ctx;
    if (is_serving()) {
        COUNT(router, served);
        return core.malloc(at_least_one(size));
    }
    COUNT(router, passed);
    return router->previous.malloc(router->previous.ctx, size);
}

static void *route_calloc(void *ctx, size_t count, size_t size)
{
    domain_router *router = ctx;
    if (is_serving()) {
        COUNT(router, served);
        if (count == 0 || size == 0)
            count = size = 1;
        return core.calloc(count, size);
    }
    COUNT(router, passed);
    return router->previous.calloc(router->previous.ctx, count, size);
}

/* A free the core refused means the interpreter's heap is damaged (a double free by C
 * code, an overrun into a chunk header): no exception can be raised from free, and going
 * on would spread the damage, so the process stops with the core's own words. */
static void core_refused(const char *what, void *ptr)
{
    prm_error error;
    char message[320];
    core.take_error(&error);
    PyOS_snprintf(message, sizeof message, "pymalloc_real serving Python: %s(%p) refused: %s: %s",
                  what, ptr, error.check, error.detail);
    Py_FatalError(message);
}

static void route_free(void *ctx, void *ptr)
{
    domain_router *router = ctx;
    if (ptr == NULL)
        return;
    if (core.owns(ptr)) {
        COUNT(router, freed_ours);
        if (core.free(ptr) != PRM_OK)
            core_refused("free", ptr);
        return;
    }
    COUNT(router, freed_theirs);
    router->previous.free(router->previous.ctx, ptr);
}

static void *route_realloc(void *ctx, void *ptr, size_t size)
{
    domain_router *router = ctx;
    if (ptr == NULL)
        return route_malloc(ctx, size);
    if (core.owns(ptr)) {
        /* Resized by its owner, even after serving ended; size 0 would free it in C. */
        COUNT(router, resized_ours);
        void *moved = core.realloc(ptr, at_least_one(size));
        if (moved == NULL) {
            prm_error error;
            if (core.take_error(&error) != PRM_OK)
                core_refused("realloc", ptr);
        }
        return moved;
    }
    COUNT(router, resized_theirs);
    return router->previous.realloc(router->previous.ctx, ptr, size);
}

/* ---- module functions ------------------------------------------------------------------- */

PyDoc_STRVAR(init_doc, "init(malloc, calloc, realloc, free, owns, take_error)\n\n"
             "The core's functions, as addresses from the cffi module.");

static PyObject *serve_init(PyObject *module, PyObject *args)
{
    unsigned long long address[6];
    if (!PyArg_ParseTuple(args, "KKKKKK:init", &address[0], &address[1], &address[2],
                          &address[3], &address[4], &address[5]))
        return NULL;
    for (int i = 0; i < 6; i++) {
        if (address[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "init: every function address is needed");
            return NULL;
        }
    }
    if (installed) {
        /* The routers already call the core: changing it under them would strand blocks. */
        if (core.malloc != (core_malloc_fn)(uintptr_t)address[0]) {
            PyErr_SetString(PyExc_RuntimeError, "init: the routers already serve another core");
            return NULL;
        }
        Py_RETURN_NONE;
    }
    core.malloc = (core_malloc_fn)(uintptr_t)address[0];
    core.calloc = (core_calloc_fn)(uintptr_t)address[1];
    core.realloc = (core_realloc_fn)(uintptr_t)address[2];
    core.free = (core_free_fn)(uintptr_t)address[3];
    core.owns = (core_owns_fn)(uintptr_t)address[4];
    core.take_error = (core_take_error_fn)(uintptr_t)address[5];
    Py_RETURN_NONE;
}

PyDoc_STRVAR(start_doc, "start()\n\n"
             "Install the routers (the first time) and send new blocks of every domain to "
             "the core.");

static PyObject *serve_start(PyObject *module, PyObject *unused)
{
    if (core.malloc == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "pymalloc_real._serve.init() was not called");
        return NULL;
    }
    if (!installed) {
        for (int i = 0; i < 3; i++)
            PyMem_GetAllocator(routers[i].domain, &routers[i].previous);
        for (int i = 0; i < 3; i++) {
            PyMemAllocatorEx router = { &routers[i], route_malloc, route_calloc,
                                        route_realloc, route_free };
            PyMem_SetAllocator(routers[i].domain, &router);
        }
        installed = 1;
    }
    __atomic_store_n(&serving, 1, __ATOMIC_RELAXED);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stop_doc, "stop()\n\n"
                       "New blocks go to the previous allocators again; the routers stay, so "
                       "our blocks still come back to the core.");

static PyObject *serve_stop(PyObject *module, PyObject *unused)
{
    __atomic_store_n(&serving, 0, __ATOMIC_RELAXED);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(state_doc, "state() -> dict\n\n"
             "installed, serving, and per domain (raw, mem, obj) the router's counts.");

static PyObject *serve_state(PyObject *module, PyObject *unused)
{
    PyObject *out = Py_BuildValue("{sOsO}", "installed", installed ? Py_True : Py_False,
                                  "serving", is_serving() ? Py_True : Py_False);
    for (int i = 0; out != NULL && i < 3; i++) {
        route_counts *c = &routers[i].counts;
#define LOAD(field) (unsigned long long)__atomic_load_n(&c->field, __ATOMIC_RELAXED)
        PyObject *counts = Py_BuildValue(
            "{sKsKsKsKsKsK}", "served", LOAD(served), "passed", LOAD(passed),
            "freed_ours", LOAD(freed_ours), "freed_theirs", LOAD(freed_theirs),
            "resized_ours", LOAD(resized_ours), "resized_theirs", LOAD(resized_theirs));
#undef LOAD
        if (counts == NULL || PyDict_SetItemString(out, routers[i].name, counts) < 0)
            Py_CLEAR(out);
        Py_XDECREF(counts);
    }
    return out;
}

PyDoc_STRVAR(allocator_name_doc, "allocator_name() -> str or None\n\n"
             "What the interpreter says its allocator is ('pymalloc', 'malloc', "
             "'pymalloc_debug', 'malloc_debug', ...), or None when it is a custom one or "
             "the interpreter does not say (a private function, looked up, not linked).");

static PyObject *serve_allocator_name(PyObject *module, PyObject *unused)
{
    typedef const char *(*name_fn)(void);
    name_fn current = (name_fn)dlsym(RTLD_DEFAULT, "_PyMem_GetCurrentAllocatorName");
    const char *name = current != NULL ? current() : NULL;
    if (name == NULL)
        Py_RETURN_NONE;
    return PyUnicode_FromString(name);
}

static PyMethodDef module_methods[] = {
    { "init", serve_init, METH_VARARGS, init_doc },
    { "start", serve_start, METH_NOARGS, start_doc },
    { "stop", serve_stop, METH_NOARGS, stop_doc },
    { "state", serve_state, METH_NOARGS, state_doc },
    { "allocator_name", serve_allocator_name, METH_NOARGS, allocator_name_doc },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef serve_module = {
    PyModuleDef_HEAD_INIT, "pymalloc_real._serve",
    "The interpreter's allocator router (see csrc/python/serve.c and serve.py).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__serve(void)
{
    return PyModule_Create(&serve_module);
}
