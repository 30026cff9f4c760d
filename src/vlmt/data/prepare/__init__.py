"""Preparation of dataset sources that do not ship in the official formats (easy-VQA), into the
layout the readers and data sections read."""
