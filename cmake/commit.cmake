# Writes OUT, a header defining AD_COMMIT (the checkout's short commit, or
# "unknown" outside a checkout), only when its text changes: run at every
# build, so --version names the commit built, not the one configured.
set(commit unknown)
if(GIT AND EXISTS "${SRC}/.git")
  execute_process(COMMAND "${GIT}" rev-parse --short=12 HEAD
    WORKING_DIRECTORY "${SRC}" OUTPUT_VARIABLE out
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
  if(rc EQUAL 0 AND out)
    set(commit "${out}")
  endif()
endif()
set(text "#define AD_COMMIT \"${commit}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
