// The compiled parts of Boost.Asio (with SSL) and Boost.Beast, built once
// here instead of in every translation unit that includes them
// (BOOST_ASIO_SEPARATE_COMPILATION / BOOST_BEAST_SEPARATE_COMPILATION are
// set PUBLIC on citadel_http, so every user links these definitions).
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
