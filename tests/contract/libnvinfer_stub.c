/* Stand-in for the TensorRT libraries (libnvinfer, libnvonnxparser, libnvinfer_plugin,
 * libnvparsers): the C entry points the Python binding wheels link against, so that the real
 * bindings import on a machine without TensorRT. Every factory returns NULL: anything that
 * needs the real library fails loudly ("factory function returned nullptr"). The contract
 * tests compile this once per soname with gcc. */
#include <stddef.h>

void *createInferBuilder_INTERNAL(void *logger, int version) { return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return NULL; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return NULL; }
void *getBuilderPluginRegistry(int capability) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
void *getPluginRegistry(void) { return NULL; }
int initLibNvInferPlugins(void *logger, const char *name_space) { return 0; }

/* TensorRT 8.x bindings also link the UFF and Caffe parsers (C++ symbols). */
void *uff_create(void) __asm__("_ZN11nvuffparser15createUffParserEv");
void *uff_create(void) { return NULL; }
void uff_field_map(void *self, const char *name, const void *data, int type, int length)
    __asm__("_ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi");
void uff_field_map(void *self, const char *name, const void *data, int type, int length) {}
void *caffe_create(void) __asm__("_ZN14nvcaffeparser117createCaffeParserEv");
void *caffe_create(void) { return NULL; }
void caffe_shutdown(void) __asm__("_ZN14nvcaffeparser123shutdownProtobufLibraryEv");
void caffe_shutdown(void) {}
