"""Jobs: requests whose answers are collected later."""
