"""Squares: the netplay demo game."""
