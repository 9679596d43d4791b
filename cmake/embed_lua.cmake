# Turns every lua/**/*.lua into one generated C file holding a sorted table
# of {module name, source bytes, length}. lua/ad/mcp.lua becomes "ad.mcp";
# lua/ad/tools/init.lua becomes "ad.tools". Source text, not bytecode, so the
# build is not tied to one VM build and tracebacks name repository files.
function(ad_embed_lua out files)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DSRC=${PROJECT_SOURCE_DIR}
            -P ${PROJECT_SOURCE_DIR}/cmake/embed_lua_gen.cmake
    DEPENDS ${files} ${PROJECT_SOURCE_DIR}/cmake/embed_lua_gen.cmake
    COMMENT "Embedding Lua policy modules")
endfunction()
