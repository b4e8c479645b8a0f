# Compiler options shared by every Sluice target: warnings, sanitizers, the version string.
add_library(sluice_options INTERFACE)
# (C++ only: nvcc takes its warning flags in engine/CMakeLists.txt)
target_compile_options(sluice_options INTERFACE "$<$<COMPILE_LANGUAGE:CXX>:-Wall;-Wextra;-Wpedantic;-Wno-missing-field-initializers>")
# g++ 12 reports a false -Wfree-nonheap-object inside std::variant's destructor when a variant holds a
# boost::system::result (event_queue.h); the pointer it flags is the variant's own heap storage.
# It also reports a false -Wrestrict for std::string concatenation at -O3 (GCC bug 105651), and a false
# -Wmismatched-new-delete where Asio frees a coroutine frame it allocated with its own operator new.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(sluice_options INTERFACE
                         "$<$<COMPILE_LANGUAGE:CXX>:-Wno-free-nonheap-object;-Wno-restrict;-Wno-mismatched-new-delete>")
endif()
if(SLUICE_WERROR)
  target_compile_options(sluice_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
if(SLUICE_SANITIZE)
  target_compile_options(sluice_options INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                                                  -fno-sanitize-recover=undefined)
  target_link_options(sluice_options INTERFACE -fsanitize=address,undefined)
  # Sanitizer instrumentation makes g++ report -Wmaybe-uninitialized inside Boost headers (boost::optional
  # in Beast's parser) that the uninstrumented build does not; the sanitizers check these reads at run time.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(sluice_options INTERFACE -Wno-maybe-uninitialized)
  endif()
endif()
target_compile_definitions(sluice_options INTERFACE SLUICE_VERSION="${PROJECT_VERSION}")
