/* The C floor of @timed without a sink: the least a compiled wrapper can do for it.
 *
 * floor(func) returns a vectorcall object that, per call, sets a context variable to a fresh
 * snapshot (a new tuple), reads the clock before and after calling func with the arguments
 * as received (no tuple or dict built), and resets the variable. Built by the benchmark suite
 * (floors.c_floor), never installed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <time.h>

#ifndef Py_TPFLAGS_HAVE_VECTORCALL
#define Py_TPFLAGS_HAVE_VECTORCALL _Py_TPFLAGS_HAVE_VECTORCALL
#endif

static PyObject *variable = NULL;

typedef struct {
    PyObject_HEAD
    PyObject *func;
    vectorcallfunc vectorcall;
} Floor;

static long long
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static PyObject *
Floor_vectorcall(Floor *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *snapshot = PyTuple_New(0);
    if (snapshot == NULL) {
        return NULL;
    }
    PyObject *token = PyContextVar_Set(variable, snapshot);
    Py_DECREF(snapshot);
    if (token == NULL) {
        return NULL;
    }
    volatile long long start = now();
    PyObject *result = PyObject_Vectorcall(self->func, args, nargsf, kwnames);
    volatile long long end = now();
    (void)start;
    (void)end;
    if (PyContextVar_Reset(variable, token) < 0) {
        Py_XDECREF(result);
        result = NULL;
    }
    Py_DECREF(token);
    return result;
}

static void
Floor_dealloc(Floor *self)
{
    Py_XDECREF(self->func);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FloorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cfloor.Floor",
    .tp_basicsize = sizeof(Floor),
    .tp_dealloc = (destructor)Floor_dealloc,
    .tp_vectorcall_offset = offsetof(Floor, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
};

static PyObject *
make_floor(PyObject *module, PyObject *func)
{
    Floor *self = PyObject_New(Floor, &FloorType);
    if (self == NULL) {
        return NULL;
    }
    self->func = Py_NewRef(func);
    self->vectorcall = (vectorcallfunc)Floor_vectorcall;
    return (PyObject *)self;
}

static PyMethodDef methods[] = {
    {"floor", make_floor, METH_O, "floor(func): the C floor wrapper of func."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "cfloor", NULL, -1, methods};

PyMODINIT_FUNC
PyInit_cfloor(void)
{
    if (PyType_Ready(&FloorType) < 0) {
        return NULL;
    }
    variable = PyContextVar_New("bench.c_floor", NULL);
    if (variable == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
