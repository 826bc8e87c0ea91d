#pragma once
/// Symbol visibility for the SDK. Everything is built with -fvisibility=hidden;
/// classes and functions that plugins and applications use across library
/// boundaries are marked VGUIDE_API so that their vtables and typeinfo are shared.
#define VGUIDE_API __attribute__((visibility("default")))
