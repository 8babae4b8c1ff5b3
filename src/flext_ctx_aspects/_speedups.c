/* The compiled parts of flext_ctx_aspects (optional: the pure-Python code does the same).
 *
 * DigestCore: the per-record path of the statistics sink. Adding one duration to a digest
 * in Python costs ~15 attribute reads and writes, two C calls for the bin key and an array
 * item increment (~250 ns); here it is one method call. The Python subclass
 * (flext_ctx_aspects.sinks._sketch.Digest) keeps everything else: growing the bins
 * (add_key), merging, quantiles, the JSON form. The state is the same attributes the
 * pure-Python base class has, so both implementations read and write it alike:
 *   count, errors, zero_count, offset   C integers (long long / Py_ssize_t)
 *   total_ns, min_ns, max_ns            Python ints (exact, unbounded; min_ns starts at
 *                                       the NO_MIN sentinel 2**64)
 *   bins                                an array('Q') of bin counts from key `offset` on
 * The bin key is the one ddsketch's LogarithmicMapping computes, ceil(log2(d) * multiplier),
 * with the multiplier handed over by the Python module (set_multiplier), so both
 * implementations compute the same double, bit for bit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <string.h>

static double multiplier = 0.0;

typedef struct {
    PyObject_HEAD
    long long count;
    long long errors;
    long long zero_count;
    Py_ssize_t offset;
    PyObject *total_ns;
    PyObject *min_ns;
    PyObject *max_ns;
    PyObject *bins;
} DigestCore;

static void
DigestCore_dealloc(DigestCore *self)
{
    Py_XDECREF(self->total_ns);
    Py_XDECREF(self->min_ns);
    Py_XDECREF(self->max_ns);
    Py_XDECREF(self->bins);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Anything the fast path does not cover (a duration that is not an exact int or does not
 * fit in a C long long, state not set yet, bins that are not an array('Q')) goes to the
 * Python implementation, so the outcome never depends on which one is active. */
static PyObject *
add_generic(DigestCore *self, PyObject *duration, PyObject *failed)
{
    return PyObject_CallMethod((PyObject *)self, "_add_generic", "OO", duration, failed);
}

static PyObject *
DigestCore_add(DigestCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        /* Keywords (add(d, failed=False)): the Python implementation parses them alike. */
        PyObject *generic = PyObject_GetAttrString((PyObject *)self, "_add_generic");
        if (generic == NULL) {
            return NULL;
        }
        PyObject *result = PyObject_Vectorcall(generic, args, (size_t)nargs, kwnames);
        Py_DECREF(generic);
        return result;
    }
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "add() takes 2 arguments (duration_ns, failed), %zd given",
                     nargs);
        return NULL;
    }
    PyObject *duration = args[0];
    if (!PyLong_CheckExact(duration) || multiplier == 0.0 || self->total_ns == NULL || self->min_ns == NULL ||
        self->max_ns == NULL || self->bins == NULL) {
        return add_generic(self, duration, args[1]);
    }
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(duration, &overflow);
    if (overflow) {
        return add_generic(self, duration, args[1]);
    }
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int failed = PyObject_IsTrue(args[1]);
    if (failed < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(self->bins, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return add_generic(self, duration, args[1]);
    }
    if (view.itemsize != 8 || view.format == NULL || strcmp(view.format, "Q") != 0) {
        PyBuffer_Release(&view);
        return add_generic(self, duration, args[1]);
    }
    /* Everything that can fail is done before any state changes: a record is added
     * entirely or not at all. */
    PyObject *total = PyNumber_Add(self->total_ns, duration);
    if (total == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int below = PyObject_RichCompareBool(duration, self->min_ns, Py_LT);
    int above = below < 0 ? -1 : PyObject_RichCompareBool(duration, self->max_ns, Py_GT);
    if (below < 0 || above < 0) {
        Py_DECREF(total);
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_SETREF(self->total_ns, total);
    if (below) {
        Py_INCREF(duration);
        Py_SETREF(self->min_ns, duration);
    }
    if (above) {
        Py_INCREF(duration);
        Py_SETREF(self->max_ns, duration);
    }
    self->count += 1;
    if (failed) {
        self->errors += 1;
    }
    if (value <= 0) {
        self->zero_count += 1;
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    long long key = (long long)ceil(log2((double)value) * multiplier);
    long long index = key - (long long)self->offset;
    Py_ssize_t length = view.len / 8;
    if (index >= 0 && index < (long long)length) {
        ((unsigned long long *)view.buf)[index] += 1;
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    PyBuffer_Release(&view);
    /* Outside the bins held so far: the Python side grows them (rare: once per new key). */
    return PyObject_CallMethod((PyObject *)self, "add_key", "Li", key, 1);
}

static PyMethodDef DigestCore_methods[] = {
    {"add", (PyCFunction)(void (*)(void))DigestCore_add, METH_FASTCALL | METH_KEYWORDS,
     "add(duration_ns, failed): add one duration (nanoseconds) and its outcome."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef DigestCore_members[] = {
    {"count", T_LONGLONG, offsetof(DigestCore, count), 0, "durations added"},
    {"errors", T_LONGLONG, offsetof(DigestCore, errors), 0, "failed operations"},
    {"zero_count", T_LONGLONG, offsetof(DigestCore, zero_count), 0, "durations <= 0"},
    {"offset", T_PYSSIZET, offsetof(DigestCore, offset), 0, "bin key of bins[0]"},
    {"total_ns", T_OBJECT_EX, offsetof(DigestCore, total_ns), 0, "sum of the durations"},
    {"min_ns", T_OBJECT_EX, offsetof(DigestCore, min_ns), 0, "smallest duration"},
    {"max_ns", T_OBJECT_EX, offsetof(DigestCore, max_ns), 0, "largest duration"},
    {"bins", T_OBJECT_EX, offsetof(DigestCore, bins), 0, "array('Q') of bin counts"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject DigestCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flext_ctx_aspects._speedups.DigestCore",
    .tp_basicsize = sizeof(DigestCore),
    .tp_dealloc = (destructor)DigestCore_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The compiled state and add() of a statistics digest (see _sketch.Digest).",
    .tp_methods = DigestCore_methods,
    .tp_members = DigestCore_members,
    .tp_new = PyType_GenericNew,
};

static PyObject *
set_multiplier(PyObject *module, PyObject *arg)
{
    double value = PyFloat_AsDouble(arg);
    if (value == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(value > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "the bin key multiplier must be > 0");
        return NULL;
    }
    multiplier = value;
    Py_RETURN_NONE;
}

static PyObject *
bin_key(PyObject *module, PyObject *arg)
{
    long long value = PyLong_AsLongLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (value <= 0) {
        PyErr_SetString(PyExc_ValueError, "bin_key() needs a positive duration");
        return NULL;
    }
    return PyLong_FromLongLong((long long)ceil(log2((double)value) * multiplier));
}

static PyMethodDef module_methods[] = {
    {"set_multiplier", set_multiplier, METH_O, "Set the bin key multiplier (once, at import)."},
    {"bin_key", bin_key, METH_O, "The bin key add() computes for a positive duration."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "flext_ctx_aspects._speedups",
    .m_doc = "Compiled parts of flext_ctx_aspects (optional; see flext_ctx_aspects._native).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&DigestCoreType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&DigestCoreType);
    if (PyModule_AddObject(module, "DigestCore", (PyObject *)&DigestCoreType) < 0) {
        Py_DECREF(&DigestCoreType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
