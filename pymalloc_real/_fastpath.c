/* _fastpath.c - the hot path of the Python API in C: BlockBase (the C part of
 * pymalloc_real.Block), malloc(size) and free(block).
 *
 * Why this exists: a cffi call releases and retakes the GIL and saves errno, ~85 ns,
 * and a Block built in Python costs another ~130 ns, so a malloc+free pair through a
 * pure-Python wrapper costs ~2.5x calling libc through cffi (benchmarks/README.md).
 * Here the pair is two C calls with the GIL held and one object allocation.
 *
 * There is still one allocator: this module holds no copy of the core. heap.py hands it
 * the addresses of prm_malloc and prm_free from the cffi extension (_core) at import,
 * and a Python hook that builds every exception, so all messages live in heap.py. The
 * core never needs the GIL, so calling it with the GIL held cannot deadlock: a thread
 * inside the core through cffi finishes without the GIL.
 *
 * Everything else about a Block (read, write, buffer, realloc, ...) is Python code in
 * heap.py, in the subclass Block(BlockBase). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <structmember.h>

typedef void *(*core_malloc_fn)(size_t);
typedef int (*core_free_fn)(void *);

/* Set once by init(); the module refuses to allocate before. */
static struct {
    core_malloc_fn malloc;
    core_free_fn free;
    PyTypeObject *block_type;   /* heap.Block: what malloc creates */
    PyObject *hook;             /* hook(event, subject, code) -> exception or None */
} fast;

typedef struct {
    PyObject_HEAD
    void *ptr;
    Py_ssize_t size;
    char live;
    PyObject *exported;         /* the cffi buffer behind memoryviews handed out, or NULL */
    PyObject *weakrefs;
} BlockObject;

static PyTypeObject BlockBaseType;

/* Ask heap.py's hook what `event` means. It returns an exception to raise, or None
 * when all is well (only "exports" can be fine). Returns 0 to go on, -1 with an
 * exception set. */
static int consult_hook(const char *event, PyObject *subject, int code)
{
    PyObject *verdict = PyObject_CallFunction(fast.hook, "sOi", event, subject, code);
    if (verdict == NULL)
        return -1;
    if (verdict == Py_None) {
        Py_DECREF(verdict);
        return 0;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(verdict), verdict);
    Py_DECREF(verdict);
    return -1;
}

static int ready(void)
{
    if (fast.malloc != NULL)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "pymalloc_real._fastpath.init() was not called");
    return 0;
}

static PyObject *new_block(void *ptr, size_t size)
{
    BlockObject *block = (BlockObject *)fast.block_type->tp_alloc(fast.block_type, 0);
    if (block == NULL)
        return NULL;
    block->ptr = ptr;
    block->size = (Py_ssize_t)size;
    block->live = 1;
    return (PyObject *)block;
}

/* ---- module functions ------------------------------------------------------------------- */

static PyObject *fast_init(PyObject *module, PyObject *args)
{
    PyObject *block_type, *hook;
    unsigned long long malloc_address, free_address;
    if (!PyArg_ParseTuple(args, "OKKO:init", &block_type, &malloc_address, &free_address, &hook))
        return NULL;
    if (!PyType_Check(block_type) || !PyType_IsSubtype((PyTypeObject *)block_type, &BlockBaseType)) {
        PyErr_SetString(PyExc_TypeError, "init: the block type must subclass BlockBase");
        return NULL;
    }
    if (malloc_address == 0 || free_address == 0 || !PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_ValueError, "init: need the core's malloc and free and a hook");
        return NULL;
    }
    Py_INCREF(block_type);
    Py_INCREF(hook);
    Py_XDECREF(fast.block_type);
    Py_XDECREF(fast.hook);
    fast.block_type = (PyTypeObject *)block_type;
    fast.hook = hook;
    fast.malloc = (core_malloc_fn)(uintptr_t)malloc_address;
    fast.free = (core_free_fn)(uintptr_t)free_address;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(malloc_doc, "malloc(size) -> Block\n\n"
             "Allocate size bytes; MemoryError (with the size) when the OS says no.");

static PyObject *fast_malloc(PyObject *module, PyObject *arg)
{
    if (!ready())
        return NULL;
    size_t size = (size_t)-1;
    if (PyLong_Check(arg) || PyIndex_Check(arg)) {
        PyObject *index = PyNumber_Index(arg);
        if (index == NULL)
            return NULL;
        size = PyLong_AsSize_t(index);
        Py_DECREF(index);
    }
    if (size == (size_t)-1) {          /* not an int, negative, or beyond size_t */
        PyErr_Clear();
        consult_hook("size", arg, 0);
        return NULL;
    }
    void *ptr = fast.malloc(size);
    if (ptr == NULL) {
        consult_hook("malloc", arg, errno);
        return NULL;
    }
    PyObject *block = new_block(ptr, size);
    if (block == NULL)
        fast.free(ptr);
    return block;
}

PyDoc_STRVAR(wrap_doc, "wrap(address, size) -> Block\n\n"
             "A live Block for memory the core has just returned (calloc, realloc, memalign).");

static PyObject *fast_wrap(PyObject *module, PyObject *args)
{
    unsigned long long address;
    Py_ssize_t size;
    if (!ready() || !PyArg_ParseTuple(args, "Kn:wrap", &address, &size))
        return NULL;
    return new_block((void *)(uintptr_t)address, (size_t)size);
}

static PyObject *block_free(BlockObject *self, PyObject *unused);

PyDoc_STRVAR(free_doc, "free(block)\n\nFree a Block (free(None) does nothing, as in C).");

static PyObject *fast_free(PyObject *module, PyObject *arg)
{
    if (arg == Py_None)
        Py_RETURN_NONE;
    if (!PyObject_TypeCheck(arg, &BlockBaseType)) {
        consult_hook("type", arg, 0);
        return NULL;
    }
    return block_free((BlockObject *)arg, NULL);
}

/* ---- BlockBase -------------------------------------------------------------------------- */

static PyObject *block_free(BlockObject *self, PyObject *unused)
{
    if (!self->live) {
        consult_hook("double free", (PyObject *)self, 0);
        return NULL;
    }
    /* Live memoryviews would dangle: heap.py decides and clears _exported, or raises. */
    if (self->exported != NULL && consult_hook("exports", (PyObject *)self, 0) != 0)
        return NULL;
    self->live = 0;
    int status = fast.free(self->ptr);
    if (status != 0) {
        consult_hook("free", (PyObject *)self, status);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *block_get_address(BlockObject *self, void *closure)
{
    return PyLong_FromVoidPtr(self->ptr);
}

static PyObject *block_get_freed(BlockObject *self, void *closure)
{
    return PyBool_FromLong(!self->live);
}

static void block_dealloc(BlockObject *self)
{
    if (self->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    Py_CLEAR(self->exported);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef block_methods[] = {
    { "free", (PyCFunction)block_free, METH_NOARGS,
      "Return the block to the allocator. A second free raises DoubleFree." },
    { NULL, NULL, 0, NULL },
};

static PyMemberDef block_members[] = {
    { "size", T_PYSSIZET, offsetof(BlockObject, size), READONLY, "The number of bytes requested." },
    { "_live", T_BOOL, offsetof(BlockObject, live), 0, NULL },
    { "_exported", T_OBJECT, offsetof(BlockObject, exported), 0, NULL },
    { NULL, 0, 0, 0, NULL },
};

static PyGetSetDef block_getset[] = {
    { "address", (getter)block_get_address, NULL,
      "The address of the memory (the pointer malloc returned), as an int.", NULL },
    { "freed", (getter)block_get_freed, NULL,
      "True once the block was freed (or reallocated into a new Block).", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyTypeObject BlockBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymalloc_real._fastpath.BlockBase",
    .tp_basicsize = sizeof(BlockObject),
    .tp_dealloc = (destructor)block_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The C part of pymalloc_real.Block: pointer, size and freed state.",
    .tp_weaklistoffset = offsetof(BlockObject, weakrefs),
    .tp_methods = block_methods,
    .tp_members = block_members,
    .tp_getset = block_getset,
    /* no tp_new: Blocks come only from malloc, calloc, realloc and memalign */
};

static PyMethodDef module_methods[] = {
    { "init", fast_init, METH_VARARGS, "init(block_type, malloc_address, free_address, hook)" },
    { "malloc", fast_malloc, METH_O, malloc_doc },
    { "free", fast_free, METH_O, free_doc },
    { "wrap", fast_wrap, METH_VARARGS, wrap_doc },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "pymalloc_real._fastpath",
    "The hot path of pymalloc_real's Python API (see heap.py).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&BlockBaseType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&fastpath_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&BlockBaseType);
    if (PyModule_AddObject(module, "BlockBase", (PyObject *)&BlockBaseType) < 0) {
        Py_DECREF(&BlockBaseType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
