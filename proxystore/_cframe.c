/*
 * proxystore._cframe: the optional compiled accelerator of proxystore.serialize.
 *
 * proxystore/serialize.py is the reference implementation and stays complete
 * on its own. This module does the framing and the checked unpickling of the
 * common payload (unsigned, a pickle stream and at most one out-of-band
 * buffer), which is every small object's write and read. In Python each is a
 * few dozen bytecodes, a measurable share of a 1 KB set or get; here they are
 * a few loads, stores and compares around the same library calls
 * (zlib.crc32 for the stream, pickle.loads).
 *
 * frame_pickle(stream, buffer) is serialize._frame_pickle: the same parts,
 * byte for byte (a 64-byte header, the stream, padding, the buffer as given).
 *
 * deserialize(data, *, secret=None) is serialize.deserialize: an unsigned
 * payload of the common shape is read here, anything else (signed, bytes or
 * str payloads, damaged or foreign data) by the Python function registered
 * with _setup(), which is the reference and names what is wrong. Unpickling
 * errors are raised here as the exception _setup()'s wrap_error returns for
 * them (with the original as __cause__), exactly as in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Bumped when serialize.py and this file must change together; serialize.py
 * ignores a stale build. */
#define CFRAME_API 1

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *
Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#endif

#define ALIGN 64
#define KIND_PICKLE 3

/* Set by _setup(). */
static PyObject *loads = NULL;      /* pickle.loads */
static PyObject *crc32 = NULL;      /* zlib.crc32 */
static PyObject *wrap_error = NULL; /* exception -> SerializationError */
static PyObject *general = NULL;    /* the pure-Python deserialize */
static PyObject *buffers_kwnames = NULL; /* ('buffers',) */
static PyObject *secret_kwnames = NULL;  /* ('secret',) */
static PyObject *pads[ALIGN];            /* pads[n]: n zero bytes, shared */

/* CRC-32 (zlib's polynomial) of the 20- or 28-byte header prefix, bytewise:
 * the stream itself goes through zlib.crc32, which is faster on long data. */
static uint32_t crc_table[256];

static void
make_crc_table(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[n] = c;
    }
}

static uint32_t
crc_bytes(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

static inline uint32_t
le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static inline uint64_t
padded(uint64_t n)
{
    return n + (-n % ALIGN);
}

/* The unpickled object of a checked stream (and buffer), errors wrapped. */
static PyObject *
unpickle(PyObject *stream, PyObject *buffer)
{
    PyObject *result;
    if (buffer == NULL) {
        PyObject *args[1] = {stream};
        result = PyObject_Vectorcall(loads, args, 1, NULL);
    }
    else {
        PyObject *buffers = PyTuple_Pack(1, buffer);
        if (buffers == NULL) {
            return NULL;
        }
        PyObject *args[2] = {stream, buffers};
        result = PyObject_Vectorcall(loads, args, 1, buffers_kwnames);
        Py_DECREF(buffers);
    }
    if (result != NULL) {
        return result;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    PyObject *wrapped = PyObject_CallOneArg(wrap_error, value);
    if (wrapped != NULL) {
        PyException_SetCause(wrapped, value); /* steals value */
        PyErr_SetObject((PyObject *)Py_TYPE(wrapped), wrapped);
        Py_DECREF(wrapped);
    }
    else {
        Py_XDECREF(value);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return NULL;
}

/* Read a common payload: 1 with the object in *out, 0 if ``data`` is anything
 * else (the general path reads it), -1 with an exception set. */
static int
load_common(PyObject *data, PyObject **out)
{
    PyObject *view = PyMemoryView_FromObject(data);
    if (view == NULL) { /* not a buffer: the general path says so */
        PyErr_Clear();
        return 0;
    }
    int status = -1;
    PyObject *stream = NULL, *buffer = NULL, *crc = NULL;
    Py_buffer *buf = PyMemoryView_GET_BUFFER(view);
    /* Byte slicing below needs a flat, contiguous view of single bytes. */
    if (buf->ndim > 1 || buf->itemsize != 1 || !PyBuffer_IsContiguous(buf, 'C')) {
        goto other;
    }
    const unsigned char *b = buf->buf;
    uint64_t total = (uint64_t)buf->len;
    if (total < ALIGN || memcmp(b, "PXS\x01", 4) != 0 || b[4] != KIND_PICKLE || b[5] || b[6] ||
        b[7]) {
        goto other;
    }
    uint32_t nseg = le32(b + 8);
    uint64_t length = le64(b + 12);
    uint64_t start = 0, size = 0;
    uint32_t expected, head;
    if (length > total) {
        goto other;
    }
    if (nseg == 1) {
        expected = le32(b + 20);
        if (total != ALIGN + padded(length)) {
            goto other;
        }
        head = crc_bytes(b, 20);
    }
    else if (nseg == 2) {
        size = le64(b + 20);
        expected = le32(b + 28);
        start = ALIGN + padded(length);
        if (size > total || total != start + padded(size)) {
            goto other;
        }
        head = crc_bytes(b, 28);
    }
    else {
        goto other;
    }
    stream = PySequence_GetSlice(view, ALIGN, (Py_ssize_t)(ALIGN + length));
    if (stream == NULL) {
        goto done;
    }
    PyObject *crc_args[2] = {stream, NULL};
    crc_args[1] = PyLong_FromUnsignedLong(head);
    if (crc_args[1] == NULL) {
        goto done;
    }
    crc = PyObject_Vectorcall(crc32, crc_args, 2, NULL);
    Py_DECREF(crc_args[1]);
    if (crc == NULL) {
        goto done;
    }
    unsigned long actual = PyLong_AsUnsignedLong(crc);
    if (actual == (unsigned long)-1 && PyErr_Occurred()) {
        goto done;
    }
    if (actual != expected) {
        goto other;
    }
    if (nseg == 2) {
        buffer = PySequence_GetSlice(view, (Py_ssize_t)start, (Py_ssize_t)(start + size));
        if (buffer == NULL) {
            goto done;
        }
    }
    *out = unpickle(stream, buffer);
    status = *out == NULL ? -1 : 1;
    goto done;
other:
    status = 0;
done:
    Py_XDECREF(crc);
    Py_XDECREF(buffer);
    Py_XDECREF(stream);
    Py_DECREF(view);
    return status;
}

static PyObject *
cframe_deserialize(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data = nargs >= 1 ? args[0] : NULL;
    PyObject *secret = Py_None;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError,
                     "deserialize() takes 1 positional argument but %zd were given", nargs);
        return NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "secret") == 0) {
            secret = args[nargs + i];
        }
        else if (data == NULL && PyUnicode_CompareWithASCIIString(name, "data") == 0) {
            data = args[nargs + i];
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "deserialize() got an unexpected keyword argument '%U'", name);
            return NULL;
        }
    }
    if (data == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "deserialize() missing 1 required positional argument: 'data'");
        return NULL;
    }
    if (general == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "proxystore._cframe: _setup() was not called");
        return NULL;
    }
    if (secret == Py_None) {
        PyObject *result = NULL;
        int found = load_common(data, &result);
        if (found != 0) {
            return found > 0 ? result : NULL;
        }
    }
    PyObject *call[2] = {data, secret};
    return PyObject_Vectorcall(general, call, 1, secret_kwnames);
}

/* CRC-32 of ``stream`` continuing from ``head``, through zlib.crc32; -1 on error. */
static int64_t
stream_crc(PyObject *stream, uint32_t head)
{
    PyObject *args[2] = {stream, PyLong_FromUnsignedLong(head)};
    if (args[1] == NULL) {
        return -1;
    }
    PyObject *crc = PyObject_Vectorcall(crc32, args, 2, NULL);
    Py_DECREF(args[1]);
    if (crc == NULL) {
        return -1;
    }
    unsigned long value = PyLong_AsUnsignedLong(crc);
    Py_DECREF(crc);
    if (value == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    return (int64_t)(value & 0xFFFFFFFFu);
}

static inline void
put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static inline void
put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* Append ``part`` (a new reference, stolen) and its padding to ``list``. */
static int
append_padded(PyObject *list, PyObject *part, uint64_t n)
{
    if (n == 0) {
        Py_DECREF(part);
        return 0;
    }
    int rc = PyList_Append(list, part);
    Py_DECREF(part);
    if (rc == 0 && n % ALIGN) {
        rc = PyList_Append(list, pads[ALIGN - n % ALIGN]);
    }
    return rc;
}

/* frame_pickle(stream, buffer): serialize._frame_pickle, the framing of an
 * unsigned pickle payload of the stream and at most one out-of-band buffer. */
static PyObject *
cframe_frame_pickle(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "frame_pickle(stream, buffer) takes 2 arguments");
        return NULL;
    }
    if (crc32 == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "proxystore._cframe: _setup() was not called");
        return NULL;
    }
    PyObject *stream = args[0], *buffer = args[1];
    if (!PyBytes_Check(stream)) {
        PyErr_SetString(PyExc_TypeError, "frame_pickle: the stream must be bytes");
        return NULL;
    }
    uint64_t length = (uint64_t)PyBytes_GET_SIZE(stream), size = 0;
    int two = buffer != Py_None;
    if (two) {
        Py_buffer view;
        if (PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        size = (uint64_t)view.len;
        PyBuffer_Release(&view);
    }
    unsigned char header[ALIGN] = {0};
    memcpy(header, "PXS\x01", 4);
    header[4] = KIND_PICKLE;
    put32(header + 8, two ? 2 : 1);
    put64(header + 12, length);
    size_t prefix = 20;
    if (two) {
        put64(header + 20, size);
        prefix = 28;
    }
    int64_t crc = stream_crc(stream, crc_bytes(header, prefix));
    if (crc < 0) {
        return NULL;
    }
    put32(header + prefix, (uint32_t)crc);
    PyObject *list = PyList_New(0);
    PyObject *head = PyBytes_FromStringAndSize((const char *)header, ALIGN);
    if (list == NULL || head == NULL || PyList_Append(list, head) < 0 ||
        append_padded(list, Py_NewRef(stream), length) < 0 ||
        (two && append_padded(list, Py_NewRef(buffer), size) < 0)) {
        Py_XDECREF(head);
        Py_XDECREF(list);
        return NULL;
    }
    Py_DECREF(head);
    return list;
}

static PyObject *
cframe_setup(PyObject *module, PyObject *args)
{
    PyObject *new_loads, *new_crc32, *new_wrap, *new_general;
    if (!PyArg_ParseTuple(args, "OOOO:_setup", &new_loads, &new_crc32, &new_wrap,
                          &new_general)) {
        return NULL;
    }
    Py_XSETREF(loads, Py_NewRef(new_loads));
    Py_XSETREF(crc32, Py_NewRef(new_crc32));
    Py_XSETREF(wrap_error, Py_NewRef(new_wrap));
    Py_XSETREF(general, Py_NewRef(new_general));
    Py_RETURN_NONE;
}

static PyMethodDef cframe_methods[] = {
    {"deserialize", (PyCFunction)(void (*)(void))cframe_deserialize,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("deserialize($module, /, data, *, secret=None)\n--\n\n"
               "proxystore.serialize.deserialize, compiled for the common payload.")},
    {"frame_pickle", (PyCFunction)(void (*)(void))cframe_frame_pickle, METH_FASTCALL,
     PyDoc_STR("frame_pickle(stream, buffer): serialize._frame_pickle, compiled.")},
    {"_setup", cframe_setup, METH_VARARGS,
     PyDoc_STR("_setup(loads, crc32, wrap_error, deserialize): connect to proxystore.serialize.")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cframe_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "proxystore._cframe",
    .m_doc = PyDoc_STR("Compiled common-payload read for proxystore.serialize (optional)."),
    .m_size = -1,
    .m_methods = cframe_methods,
};

PyMODINIT_FUNC
PyInit__cframe(void)
{
    make_crc_table();
    if (buffers_kwnames == NULL) {
        buffers_kwnames = Py_BuildValue("(s)", "buffers");
        secret_kwnames = Py_BuildValue("(s)", "secret");
        if (buffers_kwnames == NULL || secret_kwnames == NULL) {
            return NULL;
        }
    }
    for (int n = 0; n < ALIGN; n++) {
        if (pads[n] == NULL) {
            static const char zeros[ALIGN] = {0};
            pads[n] = PyBytes_FromStringAndSize(zeros, n);
            if (pads[n] == NULL) {
                return NULL;
            }
        }
    }
    PyObject *module = PyModule_Create(&cframe_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "API", CFRAME_API) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
